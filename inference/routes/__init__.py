"""The service's routes, one ``APIRouter`` per resource; ``create_app`` includes them."""
