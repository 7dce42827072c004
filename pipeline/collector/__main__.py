"""``python -m pipeline.collector``: the collector with settings from the environment."""

import logging

from pipeline.collector.server import main

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
logging.getLogger("aiokafka").setLevel(logging.WARNING)
raise SystemExit(main())
