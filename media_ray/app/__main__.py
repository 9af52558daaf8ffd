import sys

from media_ray.app.cli import main

sys.exit(main())
