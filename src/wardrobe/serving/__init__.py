"""Running the API in production: the multi-process supervisor and the nginx configuration in front."""
