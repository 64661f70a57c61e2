"""Assumed-role sessions: the credentials behind ``aws:assumeRoles`` (and v6's ``aws:assumeRole``).

botocore's own AssumeRole fetcher and deferred refreshable credentials do the
work, as for a profile with ``role_arn``: STS is first called on the first
request, and again shortly before each role's credentials expire, so an export
that outlasts a one-hour role session keeps going.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import boto3
import botocore.config
import botocore.credentials
import botocore.exceptions
import botocore.session

from .stack_config import AssumeRole


class _Only(botocore.credentials.CredentialProvider):
    """The single credential source of an assumed-role session: nothing from the environment slips in."""

    METHOD = "assume-role"

    def __init__(self, credentials: botocore.credentials.Credentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> botocore.credentials.Credentials:
        return self._credentials


def assumed_session(
    source: boto3.session.Session,
    roles: Iterable[AssumeRole],
    profile: str | None,
    sts_region: str | None,
    config: botocore.config.Config,
) -> boto3.session.Session:
    """A session on the last of ``roles``, each assumed with the credentials of the one before (the first with ``source``'s)."""
    credentials = source.get_credentials()
    if credentials is None:
        raise botocore.exceptions.NoCredentialsError()
    region = sts_region or source.region_name or "us-east-1"
    lock = threading.Lock()

    def sts_client(service: str, **keys: Any) -> Any:
        with lock:  # boto3 sessions are not safe for creating clients from several threads (boto3 issue 1592)
            return source.client(service, region_name=region, config=config, **keys)

    for role in roles:
        fetcher = botocore.credentials.AssumeRoleCredentialFetcher(
            sts_client, credentials, role.role_arn, extra_args=role.sts_arguments()
        )
        credentials = botocore.credentials.DeferredRefreshableCredentials(fetcher.fetch_credentials, "assume-role")
    core = botocore.session.Session(profile=profile)
    core.register_component("credential_provider", botocore.credentials.CredentialResolver([_Only(credentials)]))
    return boto3.session.Session(botocore_session=core)
