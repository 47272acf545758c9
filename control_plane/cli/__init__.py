"""Every click command of the product; the only package that imports click."""
