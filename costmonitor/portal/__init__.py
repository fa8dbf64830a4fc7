"""The team web portal: server-rendered pages on the apps' services and selectors."""
