"""`python -m crmkpi` is `crm-kpi`."""

import sys

from crmkpi.cli import main

sys.exit(main())
