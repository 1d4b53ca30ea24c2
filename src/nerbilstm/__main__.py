import sys

from nerbilstm.cli import main

sys.exit(main())
