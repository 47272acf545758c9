"""System data in the database written back as config documents."""
