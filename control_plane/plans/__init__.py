"""The Plan: changes between desired and live state, computed by compare, saved as a planfile."""
