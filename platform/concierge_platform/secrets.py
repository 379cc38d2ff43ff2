"""Application secrets in Secrets Manager, valued from Pulumi config secrets.

pulumi-random is not part of this project and Secrets Manager's generate-on-create is not exposed by
the provider, so operators set the values once per stack (``pulumi config set --secret ...``);
Pulumi keeps them encrypted in state and the containers read them from Secrets Manager at start.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass
class AppSecretsArgs:
    name: str
    turn_secret: pulumi.Input[str]
    staff_token: pulumi.Input[str] | None  # None with staffAuth=cognito: no secret nobody may accept
    session_secret: pulumi.Input[str]
    protect: bool = False


class AppSecrets(pulumi.ComponentResource):
    """TURN_SECRET, SESSION_SECRET and (staffAuth=token only) STAFF_TOKEN, each its own secret so access can be
    granted singly."""

    def __init__(self, name: str, args: AppSecretsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("concierge:platform:AppSecrets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.secrets: dict[str, aws.secretsmanager.Secret] = {}
        for env, value in (("TURN_SECRET", args.turn_secret), ("STAFF_TOKEN", args.staff_token),
                           ("SESSION_SECRET", args.session_secret)):
            if value is None:
                continue
            key = env.lower().replace("_", "-")
            secret = aws.secretsmanager.Secret(
                f"{name}-{key}", name_prefix=f"{args.name}/{key}-", recovery_window_in_days=7,
                description=f"{env} for the voice concierge runtime",
                opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
            )
            aws.secretsmanager.SecretVersion(f"{name}-{key}-value", secret_id=secret.id,
                                             secret_string=pulumi.Output.secret(value), opts=child)
            self.secrets[env] = secret
        self.register_outputs({})

    @property
    def arns(self) -> dict[str, pulumi.Output[str]]:
        """Environment variable name -> secret ARN (what ECS ``secrets``/the EC2 host fetch by)."""
        return {env: secret.arn for env, secret in self.secrets.items()}
