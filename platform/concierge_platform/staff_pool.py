"""Staff sign-in: an Amazon Cognito user pool, its ``staff`` group and the web app's public client.

Staff sign in from the web app with SRP (the password never leaves the browser, no redirect, and the same
flow works against the local stand-in); the runtime and AppSync accept the pool's **access** tokens of this
client whose ``cognito:groups`` hold ``staff``. Why each setting: docs/edge-cdn.md ("Staff user pool").
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

STAFF_GROUP = "staff"  # appsync/staff_only.js has the same constant; tests compare them
PASSWORD_MIN_LENGTH = 12
ACCESS_TOKEN_MINUTES = 60
ID_TOKEN_MINUTES = 60
REFRESH_TOKEN_HOURS = 12  # one working shift: signed out by the next day
# The only flows the public client allows: SRP sign-in and refreshing. No USER_PASSWORD_AUTH (the password
# would travel), no ADMIN_* flows (they need AWS credentials), no OAuth/hosted UI (not used).
# https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-authentication-flow.html
AUTH_FLOWS: tuple[str, ...] = ("ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_USER_SRP_AUTH")


@dataclass
class StaffPoolArgs:
    name: str
    mfa: str  # the pool's MfaConfiguration: OPTIONAL or ON (config.STAFF_MFA)
    protect: bool = False


class StaffPool(pulumi.ComponentResource):
    """User pool (admin-created users only, strong passwords, TOTP MFA), group ``staff``, public SRP client."""

    def __init__(self, name: str, args: StaffPoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("concierge:platform:StaffPool", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.pool = aws.cognito.UserPool(
            f"{name}-pool", name=f"{args.name}-staff",
            # Staff are created by an administrator (AdminCreateUser), never by signing themselves up.
            admin_create_user_config={"allow_admin_create_user_only": True},
            # Staff sign in with their e-mail address (case-insensitive); Cognito mails the temporary password
            # and reset codes to it, so it is verified and the only recovery channel (no SMS anywhere).
            username_attributes=["email"], auto_verified_attributes=["email"],
            username_configuration={"case_sensitive": False},
            account_recovery_setting={"recovery_mechanisms": [{"name": "verified_email", "priority": 1}]},
            password_policy={"minimum_length": PASSWORD_MIN_LENGTH, "require_lowercase": True,
                              "require_uppercase": True, "require_numbers": True, "require_symbols": True,
                              "temporary_password_validity_days": 3},
            mfa_configuration=args.mfa,
            software_token_mfa_configuration={"enabled": True},
            # The Lite plan has everything used here (SRP, TOTP MFA, groups); threat protection ("advanced
            # security") would need Plus and is off: the pool has a handful of admin-created users behind MFA.
            # https://docs.aws.amazon.com/cognito/latest/developerguide/cognito-sign-in-feature-plans.html
            user_pool_tier="LITE",
            deletion_protection="ACTIVE" if args.protect else "INACTIVE",
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        self.group = aws.cognito.UserGroup(
            f"{name}-group", name=STAFF_GROUP, user_pool_id=self.pool.id,
            description="may list and change bookings and watch bookings and conversations live", opts=child)
        self.client = aws.cognito.UserPoolClient(
            f"{name}-web-client", name=f"{args.name}-web", user_pool_id=self.pool.id,
            generate_secret=False,  # a browser cannot keep a secret
            explicit_auth_flows=list(AUTH_FLOWS),
            allowed_oauth_flows_user_pool_client=False,
            prevent_user_existence_errors="ENABLED",  # a wrong user and a wrong password answer alike
            enable_token_revocation=True,  # sign-out revokes the refresh token
            access_token_validity=ACCESS_TOKEN_MINUTES, id_token_validity=ID_TOKEN_MINUTES,
            refresh_token_validity=REFRESH_TOKEN_HOURS,
            token_validity_units={"access_token": "minutes", "id_token": "minutes", "refresh_token": "hours"},
            auth_session_validity=3,  # minutes to answer an MFA / new-password challenge
            opts=child,
        )
        self.register_outputs({"userPoolId": self.pool.id, "clientId": self.client.id})
