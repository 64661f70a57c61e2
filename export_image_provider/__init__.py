"""export-image-provider: EC2 AMI exports (ExportImage) as a Pulumi dynamic resource.

``ImageExport`` is what programs use; ``ImageExportProvider`` is the dynamic
provider behind it. boto3 is not imported here: the provider process loads it
only for operations that call AWS.
"""

__version__ = "0.1.0"

from .provider import ImageExportProvider  # noqa: E402
from .resource import ImageExport, ImageExportArgs  # noqa: E402

__all__ = ["ImageExport", "ImageExportArgs", "ImageExportProvider", "__version__"]
