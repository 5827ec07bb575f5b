import os

from django.core.wsgi import get_wsgi_application

from petsite.memory import return_large_blocks_promptly

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "petsite.settings")
return_large_blocks_promptly()  # decoded uploads' memory goes back to the system (petsite/memory.py)
application = get_wsgi_application()
