"""The coffee-shop tutorial: ``python -m tutorial.demo`` runs every step (see README.md here)."""
