import os

# Workers and tools must never pick up a developer's .env or broker by accident.
os.environ.pop("KAFKA_BROKER", None)
os.environ.pop("DATABASE_URL", None)
os.environ["RECSYS_ENV_FILE"] = ""  # no .env for this process and every process it starts
