"""Operating the platform: staging artifacts, service health, the local stack."""
