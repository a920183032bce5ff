"""Export of trained models to the runtime's formats (torch lives here, never in edge/)."""
