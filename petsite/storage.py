"""Media storage on S3 (or MinIO), with signed URLs for the address browsers use.

Photos are private: objects get no public ACL and the site answers an image request
with a redirect to a signed URL that expires (``querystring_expire`` seconds). The
processes may reach S3 at another address than browsers do (in Compose, the web and
workers reach MinIO as ``http://minio:9000``, a browser as ``http://localhost:9000``).
A signature covers the host, so a URL for browsers must be signed for their address:
``public_endpoint_url`` (AWS_S3_PUBLIC_ENDPOINT_URL) names it. On AWS leave it unset.
"""
from __future__ import annotations

from functools import cached_property

from storages.backends.s3 import S3Storage
from storages.utils import clean_name


class MediaStorage(S3Storage):
    def get_default_settings(self) -> dict:
        return {**super().get_default_settings(), "public_endpoint_url": None}

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_public_client", None)
        return state

    @cached_property
    def _public_client(self):
        """A client that only signs: the server never sends a request to this address.
        (boto3 clients, unlike resources, may be shared between threads.)"""
        return self._create_session().client(
            "s3", region_name=self.region_name, endpoint_url=self.public_endpoint_url, config=self.client_config
        )

    def url(self, name: str, parameters: dict | None = None, expire: int | None = None, http_method=None) -> str:
        if not self.public_endpoint_url:
            return super().url(name, parameters, expire, http_method)
        params = {**(parameters or {}), "Bucket": self.bucket_name, "Key": self._normalize_name(clean_name(name))}
        return self._public_client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=expire or self.querystring_expire, HttpMethod=http_method
        )
