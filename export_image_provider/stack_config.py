"""Stack config under ``aws:``: which of pulumi-aws's provider keys this provider honours, which it refuses.

The dynamic provider is handed the whole stack config, whose ``aws:`` namespace
users share with pulumi-aws. A key skipped in silence would make an export run
with other credentials, in another account or against another endpoint than the
user set, so every ``aws:`` key is either honoured or refused with one line
naming it and what to do instead. :data:`KEYS` is the one table that decides
(the README's "Region, credentials, endpoints" section shows it); the key names
and shapes are pulumi-aws's (v7 ``aws:assumeRoles``, a list, chained in order;
v6 ``aws:assumeRole``, one object). The engine sends config values as strings,
JSON for lists and objects. Pure: no boto3 here, ``configure`` runs before ``check``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

NAMESPACE = "aws:"


@dataclass(frozen=True)
class Rule:
    """What the provider does with one key: ``honoured``, or refused with ``note`` saying what to do instead.

    A refused key with ``accepts`` is let through when set to that value, which
    is what this provider does anyway.
    """

    honoured: bool
    note: str
    accepts: str | None = None


_ENV = "set {} in the provider's environment instead"
_TAGS = "pulumi-aws resource tags: give ImageExport its `tags` argument (and pulumi-aws resources an explicit aws.Provider)"

KEYS: dict[str, Rule] = {
    "region": Rule(True, "the default region of resources without `region`"),
    "profile": Rule(True, "the shared-config profile credentials and region come from"),
    "accessKey": Rule(True, "static credentials (with `secretKey`, `token`); set them with --secret"),
    "secretKey": Rule(True, "static credentials"),
    "token": Rule(True, "static credentials: the session token"),
    "assumeRoles": Rule(True, "roles to assume in turn (pulumi-aws v7), refreshed before they expire"),
    "assumeRole": Rule(True, "one role to assume (pulumi-aws v6 spelling of `assumeRoles`)"),
    "stsRegion": Rule(True, "the region of the STS endpoint AssumeRole calls go to"),
    "allowedAccountIds": Rule(True, "refuse to run unless the credentials are for one of these accounts"),
    "forbiddenAccountIds": Rule(True, "refuse to run when the credentials are for one of these accounts"),
    "skipCredentialsValidation": Rule(True, "true: no STS GetCallerIdentity before the first operation "
                                            "(still made when account ids are set: they need it)"),
    "skipRequestingAccountId": Rule(False, "S3 calls name the caller's account as ExpectedBucketOwner, "
                                           "so the account id is always requested", accepts="false"),
    "skipRegionValidation": Rule(False, "region names are never validated here", accepts="true"),
    "skipMetadataApiCheck": Rule(False, _ENV.format("AWS_EC2_METADATA_DISABLED=true"), accepts="false"),
    "assumeRoleWithWebIdentity": Rule(False, _ENV.format("AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE")),
    "endpoints": Rule(False, _ENV.format("AWS_ENDPOINT_URL_EC2, AWS_ENDPOINT_URL_S3 and AWS_ENDPOINT_URL_STS")),
    "customCaBundle": Rule(False, _ENV.format("AWS_CA_BUNDLE")),
    "sharedConfigFiles": Rule(False, _ENV.format("AWS_CONFIG_FILE")),
    "sharedCredentialsFiles": Rule(False, _ENV.format("AWS_SHARED_CREDENTIALS_FILE")),
    "ec2MetadataServiceEndpoint": Rule(False, _ENV.format("AWS_EC2_METADATA_SERVICE_ENDPOINT")),
    "ec2MetadataServiceEndpointMode": Rule(False, _ENV.format("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE")),
    "httpProxy": Rule(False, _ENV.format("HTTP_PROXY")),
    "httpsProxy": Rule(False, _ENV.format("HTTPS_PROXY")),
    "noProxy": Rule(False, _ENV.format("NO_PROXY")),
    "useFipsEndpoint": Rule(False, _ENV.format("AWS_USE_FIPS_ENDPOINT")),
    "useDualstackEndpoint": Rule(False, _ENV.format("AWS_USE_DUALSTACK_ENDPOINT")),
    "s3UsEast1RegionalEndpoint": Rule(False, _ENV.format("AWS_S3_US_EAST_1_REGIONAL_ENDPOINT")),
    "s3UsePathStyle": Rule(False, "set `addressing_style = path` under `s3` in the AWS config file instead"),
    "insecure": Rule(False, "TLS verification cannot be turned off; use AWS_CA_BUNDLE for a private CA"),
    "maxRetries": Rule(False, "retries are botocore's standard mode, 10 attempts"),
    "retryMode": Rule(False, "retries are botocore's standard mode, 10 attempts"),
    "tokenBucketRateLimiterCapacity": Rule(False, "retries are botocore's standard mode, 10 attempts"),
    "userAgents": Rule(False, "the user agent is botocore's plus export-image-provider/VERSION"),
    "defaultTags": Rule(False, _TAGS),
    "ignoreTags": Rule(False, _TAGS),
    "tagPolicyCompliance": Rule(False, _TAGS),
}

MIN_DURATION, MAX_DURATION = 15 * 60, 12 * 3600  # AssumeRole's DurationSeconds range


class StackConfigError(ValueError):
    """A stack config key this provider cannot honour; ``str()`` is one line naming it and the fix."""


@dataclass(frozen=True)
class AssumeRole:
    """One AssumeRole call: pulumi-aws's fields, as STS takes them. ``key`` names where it came from."""

    key: str
    role_arn: str
    session_name: str | None = None
    external_id: str | None = field(default=None, repr=False)
    duration_seconds: int | None = None
    policy: str | None = field(default=None, repr=False)
    policy_arns: tuple[str, ...] = ()
    source_identity: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    transitive_tag_keys: tuple[str, ...] = ()

    def sts_arguments(self) -> dict[str, Any]:
        """AssumeRole's parameters besides RoleArn; botocore picks a RoleSessionName when none is set."""
        arguments: dict[str, Any] = {
            "RoleSessionName": self.session_name,
            "ExternalId": self.external_id,
            "DurationSeconds": self.duration_seconds,
            "Policy": self.policy,
            "PolicyArns": [{"arn": arn} for arn in self.policy_arns] or None,
            "SourceIdentity": self.source_identity,
            "Tags": [{"Key": k, "Value": v} for k, v in self.tags] or None,
            "TransitiveTagKeys": list(self.transitive_tag_keys) or None,
        }
        return {name: value for name, value in arguments.items() if value is not None}


@dataclass(frozen=True)
class StackConfig:
    """What the honoured keys say; the defaults are an empty stack config."""

    region: str | None = None
    profile: str | None = None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    sts_region: str | None = None
    assume_roles: tuple[AssumeRole, ...] = ()
    allowed_account_ids: tuple[str, ...] = ()
    forbidden_account_ids: tuple[str, ...] = ()
    skip_credentials_validation: bool = False

    @property
    def checks_account(self) -> bool:
        return bool(self.allowed_account_ids or self.forbidden_account_ids)

    def account_problem(self, account: str) -> str | None:
        """The line refusing ``account``, or None when these credentials may be used."""
        if self.allowed_account_ids and account not in self.allowed_account_ids:
            return (f"aws:allowedAccountIds: the credentials are for account {account}, which is not one of "
                    f"{', '.join(self.allowed_account_ids)}: use credentials for an allowed account "
                    "(or assume a role in one), or fix aws:allowedAccountIds")
        if account in self.forbidden_account_ids:
            return (f"aws:forbiddenAccountIds: the credentials are for account {account}, which is forbidden: "
                    "use credentials for another account, or fix aws:forbiddenAccountIds")
        return None


def _decoded(key: str, value: Any) -> Any:
    """A config value as JSON when it is a JSON list or object (how the engine sends structured config)."""
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            raise StackConfigError(f"{key}: {value[:60]!r} is not valid JSON") from None
    return value


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise StackConfigError(f"{key}: expected a non-empty string, got {value!r}")
    return value


def _boolean(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise StackConfigError(f"{key}: expected true or false, got {value!r}")


def _strings(key: str, value: Any) -> tuple[str, ...]:
    value = _decoded(key, value)
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str) and item for item in items):
        raise StackConfigError(f"{key}: expected a list of strings, got {value!r}")
    return tuple(items)


def _account_ids(key: str, value: Any) -> tuple[str, ...]:
    value = _decoded(key, value)
    items = [str(item) for item in (value if isinstance(value, list) else [value])]
    bad = [item for item in items if not re.fullmatch(r"\d{12}", item)]
    if bad or not items:
        raise StackConfigError(f"{key}: {', '.join(bad) or 'nothing'} is not a 12-digit account id; "
                               f"set a JSON list such as [\"123456789012\"]")
    return tuple(items)


def _string_map(key: str, value: Any) -> tuple[tuple[str, str], ...]:
    value = _decoded(key, value)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise StackConfigError(f"{key}: expected an object of strings, got {value!r}")
    return tuple(sorted(value.items()))


_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def _seconds(key: str, value: Any) -> int:
    """``duration`` is a Go duration string (``1h``, ``90m``, ``1h30m``); ``durationSeconds`` a number."""
    if key.endswith(".duration"):
        text = value if isinstance(value, str) else ""
        parts = _GO_DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise StackConfigError(f"{key}: {value!r} is not a duration such as 1h, 90m or 1h30m")
        seconds = round(sum(float(n) * _UNIT_SECONDS[u] for n, u in parts))
    else:
        try:
            seconds = int(str(value))
        except ValueError:
            raise StackConfigError(f"{key}: expected a whole number of seconds, got {value!r}") from None
    if not MIN_DURATION <= seconds <= MAX_DURATION:
        raise StackConfigError(f"{key}: {value!r} is outside AssumeRole's 15 minutes to 12 hours")
    return seconds


# pulumi-aws's assume-role fields -> (AssumeRole attribute, parser). Both duration spellings set duration_seconds.
_ROLE_FIELDS: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
    "roleArn": ("role_arn", _text),
    "sessionName": ("session_name", _text),
    "externalId": ("external_id", _text),
    "duration": ("duration_seconds", _seconds),
    "durationSeconds": ("duration_seconds", _seconds),
    "policy": ("policy", _text),
    "policyArns": ("policy_arns", _strings),
    "sourceIdentity": ("source_identity", _text),
    "tags": ("tags", _string_map),
    "transitiveTagKeys": ("transitive_tag_keys", _strings),
}


def _assume_role(key: str, value: Any) -> AssumeRole:
    if not isinstance(value, dict):
        raise StackConfigError(f"{key}: expected an object with roleArn, got {value!r}")
    fields: dict[str, Any] = {}
    for name, item in value.items():
        if name not in _ROLE_FIELDS:
            raise StackConfigError(f"{key}.{name}: not an assume-role field; known: {', '.join(_ROLE_FIELDS)}")
        attribute, parse = _ROLE_FIELDS[name]
        if attribute in fields:
            raise StackConfigError(f"{key}.{name}: set duration or durationSeconds, not both")
        fields[attribute] = parse(f"{key}.{name}", item)
    if "role_arn" not in fields:
        raise StackConfigError(f"{key}.roleArn: missing: name the role to assume")
    if not re.fullmatch(r"arn:aws[\w-]*:iam::\d{12}:role/.+", fields["role_arn"]):
        raise StackConfigError(f"{key}.roleArn: {fields['role_arn']!r} is not a role ARN "
                               "(arn:aws:iam::123456789012:role/NAME)")
    return AssumeRole(key=key, **fields)


def _assume_roles(raw: Mapping[str, Any]) -> tuple[AssumeRole, ...]:
    single, chain = raw.get(NAMESPACE + "assumeRole"), raw.get(NAMESPACE + "assumeRoles")
    if single is not None and chain is not None:
        raise StackConfigError("aws:assumeRole: set aws:assumeRoles (pulumi-aws v7) or aws:assumeRole (v6), not both")
    if single is not None:
        return (_assume_role("aws:assumeRole", _decoded("aws:assumeRole", single)),)
    if chain is None:
        return ()
    roles = _decoded("aws:assumeRoles", chain)
    if not isinstance(roles, list):
        raise StackConfigError(f"aws:assumeRoles: expected a list of roles ([{{\"roleArn\": ...}}]), got {roles!r}")
    return tuple(_assume_role(f"aws:assumeRoles[{i}]", role) for i, role in enumerate(roles))


def read_stack_config(raw: Mapping[str, Any]) -> StackConfig:
    """The honoured keys of ``raw`` (the whole stack config); raises :class:`StackConfigError` on any other."""
    for name, value in sorted(raw.items()):
        if not name.startswith(NAMESPACE) or value is None:
            continue
        key = name[len(NAMESPACE):]
        rule = KEYS.get(key)
        if rule is None:
            raise StackConfigError(f"{name}: not a pulumi-aws config key this provider knows; "
                                   "remove it from the stack config (see the README's 'Region, credentials, endpoints')")
        if not rule.honoured and str(value).strip().lower() != rule.accepts:
            allowed = f" (only {rule.accepts} is)" if rule.accepts else ""
            raise StackConfigError(f"{name}: not supported by ImageExport{allowed}: {rule.note}")

    def text(key: str) -> str | None:
        value = raw.get(NAMESPACE + key)
        return None if value is None else _text(NAMESPACE + key, value)

    allowed, forbidden = raw.get("aws:allowedAccountIds"), raw.get("aws:forbiddenAccountIds")
    if allowed is not None and forbidden is not None:
        raise StackConfigError("aws:forbiddenAccountIds: set aws:allowedAccountIds or aws:forbiddenAccountIds, not both")
    skip = raw.get("aws:skipCredentialsValidation")
    return StackConfig(
        region=text("region"),
        profile=text("profile"),
        access_key=text("accessKey"),
        secret_key=text("secretKey"),
        token=text("token"),
        sts_region=text("stsRegion"),
        assume_roles=_assume_roles(raw),
        allowed_account_ids=_account_ids("aws:allowedAccountIds", allowed) if allowed is not None else (),
        forbidden_account_ids=_account_ids("aws:forbiddenAccountIds", forbidden) if forbidden is not None else (),
        skip_credentials_validation=skip is not None and _boolean("aws:skipCredentialsValidation", skip),
    )
