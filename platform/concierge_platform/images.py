"""Images: the ECR repositories, the runtime image built from the repo's Dockerfile, and coturn mirrored.

With ``imageUri`` set (an image built by CI, say) nothing is built and that reference is deployed as is.

coturn is mirrored into ECR by a one-line build (``platform/coturn-image/Dockerfile``: ``FROM <turnImage>``) and
deployed by the digest of that push. Chosen over an ECR pull-through cache rule because Docker Hub as an
upstream requires a Docker Hub credential in Secrets Manager
(https://docs.aws.amazon.com/AmazonECR/latest/userguide/pull-through-cache-creating-rule.html), which this
project cannot create for the operator; and over a digest written here because a digest nobody looked up
would be a fake. ``turnImageUri`` (digest-pinned) skips the mirror, e.g. for a CI-mirrored image.
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
COTURN_CONTEXT = REPO_ROOT / "platform" / "coturn-image"


@dataclass
class ImagesArgs:
    name: str
    image_uri: str | None
    context: Path = REPO_ROOT
    turn_image: str = "coturn/coturn:4.6.3"
    turn_image_uri: str | None = None
    protect: bool = False


def _lifecycle() -> str:
    return json.dumps({"rules": [{
        "rulePriority": 1, "description": f"keep the newest {KEEP_IMAGES} images",
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": KEEP_IMAGES},
        "action": {"type": "expire"},
    }]})


class Images(pulumi.ComponentResource):
    """ECR repositories (scan on push, lifecycle) and the runtime and coturn image references (by digest)."""

    def __init__(self, name: str, args: ImagesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("concierge:platform:Images", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Repository names are fixed (they only change when the name does, so a replacement never collides);
        # they hold the deployed images, so they are protected with the other stateful resources.
        kept = pulumi.ResourceOptions(parent=self, protect=args.protect)
        self.repository = aws.ecr.Repository(
            f"{name}-runtime", name=f"{args.name}/runtime", image_tag_mutability="MUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "AES256"}], force_delete=False, opts=kept,
        )
        aws.ecr.LifecyclePolicy(f"{name}-runtime-lifecycle", repository=self.repository.name, policy=_lifecycle(),
                                opts=child)
        self.image: docker_build.Image | None = None
        if args.image_uri:
            self.image_ref: pulumi.Output[str] = pulumi.Output.from_input(args.image_uri)
        else:
            self.image = self._build(f"{name}-runtime-image", self.repository, args.context,
                                     args.context / "Dockerfile", {}, child)
            self.image_ref = self.image.ref

        self.turn_repository: aws.ecr.Repository | None = None
        self.turn_image: docker_build.Image | None = None
        if args.turn_image_uri:
            self.turn_image_ref: pulumi.Output[str] = pulumi.Output.from_input(args.turn_image_uri)
        else:
            self.turn_repository = aws.ecr.Repository(
                f"{name}-coturn", name=f"{args.name}/coturn", image_tag_mutability="MUTABLE",
                image_scanning_configuration={"scan_on_push": True},
                encryption_configurations=[{"encryption_type": "AES256"}], force_delete=False, opts=kept,
            )
            aws.ecr.LifecyclePolicy(f"{name}-coturn-lifecycle", repository=self.turn_repository.name,
                                    policy=_lifecycle(), opts=child)
            self.turn_image = self._build(f"{name}-coturn-image", self.turn_repository, COTURN_CONTEXT,
                                          COTURN_CONTEXT / "Dockerfile", {"COTURN_IMAGE": args.turn_image}, child)
            self.turn_image_ref = self.turn_image.ref
        self.register_outputs({"imageRef": self.image_ref, "turnImageRef": self.turn_image_ref})

    @staticmethod
    def _build(name: str, repository: aws.ecr.Repository, context: Path, dockerfile: Path,
               build_args: dict[str, str], opts: pulumi.ResourceOptions) -> docker_build.Image:
        token = aws.ecr.get_authorization_token_output(registry_id=repository.registry_id)
        return docker_build.Image(
            name,
            context={"location": str(context)},
            dockerfile={"location": str(dockerfile)},
            platforms=[IMAGE_PLATFORM],
            build_args=build_args or None,
            push=True,
            # The stack tag moves with each build; services deploy the digest-pinned ``ref``.
            tags=[pulumi.Output.concat(repository.repository_url, ":", pulumi.get_stack())],
            registries=[{"address": repository.repository_url, "username": token.user_name,
                         "password": token.password}],
            opts=opts,
        )
