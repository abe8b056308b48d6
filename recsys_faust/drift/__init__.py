"""Input drift: windowed feature distributions of the event stream against a reference."""
