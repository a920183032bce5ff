"""Training-side code (torch lives here and in export/, never in edge/)."""
