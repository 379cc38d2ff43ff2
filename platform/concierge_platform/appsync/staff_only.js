// AppSync Events onSubscribe handler for the `restaurant-booking` and `conversations` namespaces.
//
// Why it exists: AppSync's AMAZON_COGNITO_USER_POOLS auth mode proves that a token was issued by the staff
// user pool to the app client (signature, issuer, expiry, appIdClientRegex), but it does NOT check group
// membership. A pool user who is not (or no longer) in the staff group must not watch bookings or
// conversations, so this handler refuses any user-pool identity whose `groups` lack STAFF_GROUP.
// Other identities pass: guests come through the Lambda authorizer (identity.handlerContext), which has
// already bound them to their own session's channel, and the publisher uses IAM.
//
// Handlers run after the namespace's auth mode has authorized the request:
//   https://docs.aws.amazon.com/appsync/latest/eventapi/channel-namespace-handlers.html
// Identity shape (Cognito: sub, issuer, username, claims, sourceIp, defaultAuthStrategy, groups):
//   https://docs.aws.amazon.com/appsync/latest/eventapi/context-reference.html
//
// Written for the APPSYNC_JS runtime (no try/catch, no while loops); the local AppSync emulator
// (emulators/appsync_events.py) executes this same file with Node, so keep it to plain ES2020 syntax.
import { util } from '@aws-appsync/utils';

const STAFF_GROUP = "staff";

function isUserPoolIdentity(identity) {
  // A Cognito user-pool identity always carries the token's issuer and subject; Lambda identities carry
  // `handlerContext`, IAM identities `accountId`/`userArn`.
  return identity !== null && identity !== undefined
    && typeof identity.issuer === "string" && identity.issuer.length > 0
    && identity.sub !== undefined && identity.sub !== null;
}

function inStaffGroup(identity) {
  const groups = identity.groups;
  if (!Array.isArray(groups)) {
    return false;
  }
  return groups.indexOf(STAFF_GROUP) >= 0;
}

export function onSubscribe(ctx) {
  const identity = ctx.identity;
  if (isUserPoolIdentity(identity) && !inStaffGroup(identity)) {
    util.unauthorized();
  }
}
