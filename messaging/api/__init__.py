"""The integrator API (Django REST framework), versioned under /api/v1/."""
