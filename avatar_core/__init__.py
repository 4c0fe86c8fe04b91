"""Everything the avatar model needs: text frontend, AV-Flow, speech features, motion, renderers, Engine."""

import warnings

# pyworld 0.3.x imports pkg_resources (kept available by pinning setuptools<81); the warning is noise.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
