"""See the package README section on layers."""
