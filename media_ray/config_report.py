"""The report part of the configuration tree (`report`): the pages `analyze` writes beside
report.json (report.csv, report.html and its thumbnails) and the annotated video of
`--annotate`. Part of `media_ray.config`, which re-exports these classes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AnnotateParams", "ReportConfig"]


class AnnotateParams(BaseModel):
    """The video `analyze --annotate FILE` writes: the source's frames with the boxes drawn."""

    model_config = ConfigDict(extra="forbid")

    codecs: list[str] = Field(
        ["libx264", "mpeg4"], min_length=1, description="encoders to use, the first this PyAV has (H.264, else MPEG-4)"
    )
    crf: int = Field(20, ge=0, le=51, description="H.264 constant rate factor (lower: better, larger)")
    preset: str = Field("veryfast", description="H.264 encoder preset")
    bitrate: int = Field(4_000_000, ge=100_000, description="bit rate of an encoder without a rate factor (MPEG-4)")
    thickness: int = Field(4, ge=1, le=20, description="width of a box's lines, in pixels of the video")


class ReportConfig(BaseModel):
    """The files `analyze` writes beside report.json for people to read."""

    model_config = ConfigDict(extra="forbid")

    csv: bool = Field(True, description="write report.csv: a row per appearance")
    html: bool = Field(True, description="write report.html, with a thumbnail of each appearance's best frame")
    thumbnail_width: int = Field(320, ge=32, le=1920, description="width of the thumbnails, in pixels")
    jpeg_quality: int = Field(85, ge=10, le=100, description="JPEG quality of the thumbnails")
    max_thumbnails: int = Field(
        500, ge=0, description="thumbnails written at most (the appearances of highest quality first)"
    )
    annotate: AnnotateParams = Field(default_factory=AnnotateParams, description="the annotated video")
