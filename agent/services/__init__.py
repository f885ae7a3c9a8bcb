"""Services: what a report contains, independent of where the numbers come from."""
