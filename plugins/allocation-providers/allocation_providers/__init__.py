"""Built-in pricing providers of allocation, registered as entry points."""
