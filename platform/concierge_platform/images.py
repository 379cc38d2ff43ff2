"""Images: the ECR repository and the runtime image, built from the repo's Dockerfile on ``pulumi up``.

With ``imageUri`` set (an image built by CI, say) nothing is built and that reference is deployed as is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

from .lambda_code import REPO_ROOT

IMAGE_PLATFORM = "linux/amd64"  # matches the Fargate task's X86_64 runtime platform and the EC2 AMI
KEEP_IMAGES = 20


@dataclass
class ImagesArgs:
    name: str
    image_uri: str | None
    context: Path = REPO_ROOT


class Images(pulumi.ComponentResource):
    """ECR repository (scan on push, lifecycle) and the runtime image reference (pinned by digest)."""

    def __init__(self, name: str, args: ImagesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("concierge:platform:Images", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.repository = aws.ecr.Repository(
            f"{name}-runtime", name=f"{args.name}/runtime", image_tag_mutability="MUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "AES256"}], force_delete=False, opts=child,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-runtime-lifecycle", repository=self.repository.name,
            policy=json.dumps({"rules": [{
                "rulePriority": 1, "description": f"keep the newest {KEEP_IMAGES} images",
                "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": KEEP_IMAGES},
                "action": {"type": "expire"},
            }]}),
            opts=child,
        )
        self.image: docker_build.Image | None = None
        if args.image_uri:
            self.image_ref: pulumi.Output[str] = pulumi.Output.from_input(args.image_uri)
        else:
            token = aws.ecr.get_authorization_token_output(registry_id=self.repository.registry_id)
            self.image = docker_build.Image(
                f"{name}-runtime-image",
                context={"location": str(args.context)},
                dockerfile={"location": str(args.context / "Dockerfile")},
                platforms=[IMAGE_PLATFORM],
                push=True,
                # The stack tag moves with each build; services deploy the digest-pinned ``ref``.
                tags=[pulumi.Output.concat(self.repository.repository_url, ":", pulumi.get_stack())],
                registries=[{"address": self.repository.repository_url, "username": token.user_name,
                             "password": token.password}],
                opts=child,
            )
            self.image_ref = self.image.ref
        self.register_outputs({"imageRef": self.image_ref})
