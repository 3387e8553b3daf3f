"""The pure domain core: decisions and types with no I/O."""
