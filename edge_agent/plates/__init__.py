"""Reading Chinese licence plates from camera frames on the gate PC (issue 6).

``PlateReader().read(frame)`` returns ``PlateReading``s; ``vote`` combines several frames
of a standing truck; ``grammar.normalise_plate`` validates typed or read plate text.
"""

from edge_agent.plates.reader import PlateReader
from edge_agent.plates.reading import PlateReading, vote

__all__ = ["PlateReader", "PlateReading", "vote"]
