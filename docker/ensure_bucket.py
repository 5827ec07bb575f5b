"""Create the media bucket if it is missing, private (compose.yaml runs this before migrating).

Reads the variables the site reads (AWS_STORAGE_BUCKET_NAME, AWS_S3_ENDPOINT_URL,
AWS_S3_REGION_NAME, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY). Safe to run at every
start: an existing bucket is left as it is. Public access is blocked where the service
supports it (AWS, MinIO ignores it: its buckets are private unless a policy says otherwise).
"""
from __future__ import annotations

import os

import boto3
from botocore.exceptions import ClientError


def ensure_bucket() -> str:
    name = os.environ["AWS_STORAGE_BUCKET_NAME"]
    region = os.environ.get("AWS_S3_REGION_NAME") or "us-east-1"
    s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_S3_ENDPOINT_URL") or None, region_name=region)
    try:
        s3.head_bucket(Bucket=name)
        return f"bucket {name} exists"
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("404", "NoSuchBucket"):
            raise
    location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=name, **location)
    try:
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=dict.fromkeys(
            ["BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"], True))
    except ClientError as error:
        print(f"public access block not supported here ({error.response['Error']['Code']}); the bucket is private")
    return f"bucket {name} created"


if __name__ == "__main__":
    print(ensure_bucket())
