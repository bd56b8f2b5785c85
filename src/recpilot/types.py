"""Array aliases shared by every layer (no imports from inside the package)."""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import numpy.typing as npt

IntArray: TypeAlias = npt.NDArray[np.int64]
FloatArray: TypeAlias = npt.NDArray[np.float32]
BoolArray: TypeAlias = npt.NDArray[np.bool_]

#: Index used for "no such user/item" in index arrays.
UNKNOWN = -1
