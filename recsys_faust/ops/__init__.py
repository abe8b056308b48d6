"""Operations on a whole stack: backup and restore."""
