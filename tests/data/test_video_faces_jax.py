"""Faces from video in jax: data.face_frames = k averages the embeddings of the k frames as in torch (the check
and its fixture are tests/data/test_video_faces_torch.py's)."""

from tests.data.test_video_faces_torch import face_frames_average, videos  # noqa: F401 (videos: the fixture)


def test_face_frames_averages_the_embeddings_of_k_frames(videos):  # noqa: F811
    face_frames_average(videos, "jax")
