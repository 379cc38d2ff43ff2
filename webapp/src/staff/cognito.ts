// The Cognito user pool calls of staff sign-in, behind a small promise-based interface so the session
// state machine (session.ts) can be tested without a network.
//
// Library: `amazon-cognito-identity-js` (pinned exactly in package.json), AWS's own SRP client, kept in
// the aws-amplify/amplify-js repository. Why this one and not Amplify v6's `aws-amplify/auth`:
// - it takes the Cognito endpoint per pool (`endpoint`), which a local stand-in needs, and the pool's
//   storage per pool, so tokens never touch localStorage (the library is given an in-memory store;
//   session.ts decides what is kept in sessionStorage);
// - it does only what staff sign-in needs (SRP, the NEW_PASSWORD_REQUIRED / SOFTWARE_TOKEN_MFA /
//   MFA_SETUP challenges, REFRESH_TOKEN_AUTH, RevokeToken / GlobalSignOut) with no global singleton configuration and
//   no refresh logic of its own that would compete with session.ts's timer.
// The SRP maths (SRP-6a over the 3072-bit group, HKDF, the PASSWORD_CLAIM_SIGNATURE) is the library's;
// nothing cryptographic is hand-written here.
// Protocol: https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-authentication-flow-methods.html

import {
  AuthenticationDetails,
  CognitoAccessToken,
  CognitoIdToken,
  CognitoRefreshToken,
  CognitoUser,
  CognitoUserPool,
  CognitoUserSession,
  type ICognitoStorage,
} from "amazon-cognito-identity-js";

export interface Tokens {
  accessToken: string;
  idToken: string;
  refreshToken: string;
}

/** Where a sign-in attempt stands after each call. */
export type SignInStep =
  | { kind: "signedIn"; tokens: Tokens }
  /** an administrator created the user with a temporary password: the staff member picks their own */
  | { kind: "newPassword" }
  /** the user has TOTP MFA: the code from their authenticator app */
  | { kind: "totp" }
  /** MFA is required and not set up yet: add `secret` to an authenticator app, then verify a code */
  | { kind: "mfaSetup"; secret: string; uri: string };

export interface CognitoGateway {
  signIn(username: string, password: string): Promise<SignInStep>;
  completeNewPassword(password: string): Promise<SignInStep>;
  sendTotp(code: string): Promise<SignInStep>;
  verifyTotpSetup(code: string): Promise<SignInStep>;
  /** REFRESH_TOKEN_AUTH: new access and id tokens (the refresh token stays the same) */
  refresh(tokens: Tokens, username: string): Promise<Tokens>;
  /** RevokeToken (or GlobalSignOut): Cognito revokes the refresh token, so the session cannot be extended */
  signOut(tokens: Tokens, username: string): Promise<void>;
}

/** An error from Cognito (or the network), with the Cognito error code when there is one. */
export class CognitoFailure extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Wording for the person at the desk; Cognito's own messages are kept only where they explain a rule. */
export function describeFailure(error: unknown): CognitoFailure {
  if (error instanceof CognitoFailure) return error; // already worded
  const raw = (typeof error === "object" && error !== null ? error : {}) as { code?: unknown; name?: unknown; message?: unknown };
  const code = typeof raw.code === "string" ? raw.code : typeof raw.name === "string" ? raw.name : "Error";
  const message = typeof raw.message === "string" ? raw.message : String(error);
  switch (code) {
    case "NotAuthorizedException":
    case "UserNotFoundException":
      // With "prevent user existence errors" on, Cognito answers both the same way; so do we.
      if (/temporary password has expired/i.test(message)) {
        return new CognitoFailure(code, "Your temporary password has expired. Ask an administrator for a new one.");
      }
      if (/attempts exceeded/i.test(message)) return new CognitoFailure(code, "Too many failed attempts. Wait a few minutes and try again.");
      if (/disabled/i.test(message)) return new CognitoFailure(code, "This account is disabled. Ask an administrator.");
      if (/session is expired|invalid session/i.test(message)) return new CognitoFailure(code, "That took too long. Sign in again.");
      if (/expired|revoked/i.test(message)) return new CognitoFailure(code, "Your session has ended. Sign in again.");
      return new CognitoFailure(code, "Incorrect username or password.");
    case "PasswordResetRequiredException":
      return new CognitoFailure(code, "Your password was reset by an administrator. Ask them for a new temporary password.");
    case "UserNotConfirmedException":
      return new CognitoFailure(code, "This account is not confirmed yet. Ask an administrator.");
    case "InvalidPasswordException":
      return new CognitoFailure(code, `That password is not allowed: ${message.replace(/^.*?:\s*/, "")}`);
    case "CodeMismatchException":
    case "EnableSoftwareTokenMFAException":
      return new CognitoFailure(code, "That code is not right. Enter the current 6-digit code from your authenticator app.");
    case "ExpiredCodeException":
      return new CognitoFailure(code, "That code has expired. Enter the current code.");
    case "TooManyRequestsException":
    case "TooManyFailedAttemptsException":
    case "LimitExceededException":
      return new CognitoFailure(code, "Too many attempts. Wait a few minutes and try again.");
    default:
      if (/network error|failed to fetch/i.test(message)) {
        return new CognitoFailure("NetworkError", "The sign-in service could not be reached. Check the connection and try again.");
      }
      return new CognitoFailure(code, message || "Sign-in failed.");
  }
}

/** The library insists on a storage object; this one forgets everything with the page. */
class MemoryStorage implements ICognitoStorage {
  private readonly items = new Map<string, string>();
  setItem(key: string, value: string): void {
    this.items.set(key, value);
  }
  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }
  removeItem(key: string): void {
    this.items.delete(key);
  }
  clear(): void {
    this.items.clear();
  }
}

function tokensOf(session: CognitoUserSession): Tokens {
  return {
    accessToken: session.getAccessToken().getJwtToken(),
    idToken: session.getIdToken().getJwtToken(),
    refreshToken: session.getRefreshToken().getToken(),
  };
}

export interface CognitoPoolSettings {
  userPoolId: string;
  clientId: string;
  /** https://cognito-idp.<region>.amazonaws.com/ or a local stand-in's URL */
  endpoint: string;
  /** shown as the issuer in authenticator apps */
  issuer: string;
}

/** The real gateway: amazon-cognito-identity-js against the pool's endpoint. */
export function cognitoGateway(settings: CognitoPoolSettings): CognitoGateway {
  const storage = new MemoryStorage();
  const pool = new CognitoUserPool({
    UserPoolId: settings.userPoolId,
    ClientId: settings.clientId,
    endpoint: settings.endpoint.endsWith("/") ? settings.endpoint : `${settings.endpoint}/`,
    Storage: storage,
    // No Cognito advanced security (threat protection) data collection script is loaded on the page.
    AdvancedSecurityDataCollectionFlag: false,
  });
  let pending: CognitoUser | null = null;
  let pendingName = "";

  const userFor = (username: string) => new CognitoUser({ Username: username, Pool: pool, Storage: storage });

  /** The callbacks every step of an SRP sign-in may end in, turned into one promise. */
  const step = (resolve: (s: SignInStep) => void, reject: (e: unknown) => void, user: CognitoUser) => ({
    onSuccess: (session: CognitoUserSession) => {
      pending = null;
      resolve({ kind: "signedIn", tokens: tokensOf(session) });
    },
    onFailure: (error: unknown) => reject(describeFailure(error)),
    newPasswordRequired: () => resolve({ kind: "newPassword" }),
    totpRequired: () => resolve({ kind: "totp" }),
    mfaRequired: () => reject(new CognitoFailure("SMS_MFA", "This account uses text-message codes, which staff sign-in does not offer. Ask an administrator.")),
    selectMFAType: () => {
      // Only TOTP is enabled on the staff pool (no SMS), so choosing it is the only answer.
      user.sendMFASelectionAnswer("SOFTWARE_TOKEN_MFA", step(resolve, reject, user));
    },
    mfaSetup: () => {
      user.associateSoftwareToken({
        associateSecretCode: (secret: string) => {
          const label = encodeURIComponent(`${settings.issuer}:${pendingName}`);
          const uri = `otpauth://totp/${label}?secret=${secret}&issuer=${encodeURIComponent(settings.issuer)}`;
          resolve({ kind: "mfaSetup", secret, uri });
        },
        onFailure: (error: unknown) => reject(describeFailure(error)),
      });
    },
    customChallenge: () => reject(new CognitoFailure("CUSTOM_CHALLENGE", "This pool asks for a custom challenge, which staff sign-in does not support.")),
  });

  const current = (): CognitoUser => {
    if (!pending) throw new CognitoFailure("NoSignIn", "Start again: enter your username and password.");
    return pending;
  };

  return {
    signIn(username, password) {
      const user = userFor(username);
      user.setAuthenticationFlowType("USER_SRP_AUTH");
      pending = user;
      pendingName = username;
      return new Promise((resolve, reject) =>
        user.authenticateUser(new AuthenticationDetails({ Username: username, Password: password }), step(resolve, reject, user)),
      );
    },
    completeNewPassword(password) {
      const user = current();
      // No extra attributes: the administrator set the required ones when creating the user.
      return new Promise((resolve, reject) => user.completeNewPasswordChallenge(password, {}, step(resolve, reject, user)));
    },
    sendTotp(code) {
      const user = current();
      return new Promise((resolve, reject) => user.sendMFACode(code, step(resolve, reject, user), "SOFTWARE_TOKEN_MFA"));
    },
    verifyTotpSetup(code) {
      const user = current();
      return new Promise((resolve, reject) =>
        user.verifySoftwareToken(code, "Staff sign-in", {
          onSuccess: (session: CognitoUserSession) => {
            pending = null;
            resolve({ kind: "signedIn", tokens: tokensOf(session) });
          },
          onFailure: (error: unknown) => reject(describeFailure(error)),
        }),
      );
    },
    refresh(tokens, username) {
      const user = userFor(username);
      return new Promise((resolve, reject) =>
        user.refreshSession(new CognitoRefreshToken({ RefreshToken: tokens.refreshToken }), (error: unknown, session: CognitoUserSession) => {
          if (error) reject(describeFailure(error));
          else resolve(tokensOf(session));
        }),
      );
    },
    signOut(tokens, username) {
      const user = userFor(username);
      const session = new CognitoUserSession({
        AccessToken: new CognitoAccessToken({ AccessToken: tokens.accessToken }),
        IdToken: new CognitoIdToken({ IdToken: tokens.idToken }),
        RefreshToken: new CognitoRefreshToken({ RefreshToken: tokens.refreshToken }),
      });
      user.setSignInUserSession(session);
      const fail = (reject: (e: unknown) => void) => (error: unknown) => reject(describeFailure(error));
      if (session.getAccessToken().decodePayload().origin_jti) {
        // Token revocation is on for the app client (the default): RevokeToken ends this browser's session
        // only - the refresh token and the tokens issued from it - not the staff member's other devices.
        // The library's `revokeTokens` sends it (untyped in its index.d.ts; `signOut(callback)` wraps it
        // but first insists on a still-valid session from its own storage, which this page never fills).
        const revocable = user as unknown as { revokeTokens(callback: (error?: unknown) => void): void };
        return new Promise((resolve, reject) => revocable.revokeTokens((error) => (error ? fail(reject)(error) : resolve())));
      }
      // No revocation on the client: GlobalSignOut (all of the user's refresh tokens); it needs a valid
      // access token, so an expired one is refreshed first.
      const globalSignOut = (valid: CognitoUserSession) =>
        new Promise<void>((resolve, reject) => {
          user.setSignInUserSession(valid);
          user.globalSignOut({ onSuccess: () => resolve(), onFailure: fail(reject) });
        });
      if (session.isValid()) return globalSignOut(session);
      return new Promise<CognitoUserSession>((resolve, reject) =>
        user.refreshSession(session.getRefreshToken(), (error: unknown, fresh: CognitoUserSession) => (error ? fail(reject)(error) : resolve(fresh))),
      ).then(globalSignOut);
    },
  };
}
