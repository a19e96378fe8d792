"""Adapters: the only modules that import boto3/botocore. Each implements a port of the domain."""
