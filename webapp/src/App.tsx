// Two views in one build: the guest's voice page (#/) and the staff bookings page (#/staff).
// Hash routing keeps the runtime's static file serving trivial (no server-side fallback routes).

import { useEffect, useState } from "react";

import { type AppConfig, loadConfig } from "./config";
import { GuestView } from "./guest/GuestView";
import { StaffView } from "./staff/StaffView";

type Route = "guest" | "staff";

function routeOf(hash: string): Route {
  return hash.replace(/^#\/?/, "").startsWith("staff") ? "staff" : "guest";
}

export function App() {
  const [route, setRoute] = useState<Route>(() => routeOf(window.location.hash));
  const [config, setConfig] = useState<AppConfig | null>(null);
  const [problem, setProblem] = useState<string | null>(null);

  useEffect(() => {
    const onHash = () => setRoute(routeOf(window.location.hash));
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);

  useEffect(() => {
    loadConfig()
      .then(setConfig)
      .catch((error: unknown) =>
        setProblem(`The app could not load its settings from the server (${error instanceof Error ? error.message : String(error)}). Reload to try again.`),
      );
  }, []);

  useEffect(() => {
    document.title = `${config?.restaurantName ?? "Nova Bistro"} — ${route === "staff" ? "Bookings" : "Concierge"}`;
  }, [config, route]);

  return (
    <>
      <a className="skip-link" href="#content">
        Skip to content
      </a>
      <header className="topbar">
        <span className="brand">{config?.restaurantName ?? "Nova Bistro"}</span>
        <nav aria-label="Views">
          <a href="#/" aria-current={route === "guest" ? "page" : undefined}>
            Talk to us
          </a>
          <a href="#/staff" aria-current={route === "staff" ? "page" : undefined}>
            Staff bookings
          </a>
        </nav>
      </header>
      <div id="content" className="content">
        {problem ? (
          <p className="problem" role="alert">
            {problem}
          </p>
        ) : !config ? (
          <p className="muted" role="status">
            Loading…
          </p>
        ) : route === "staff" ? (
          <StaffView config={config} />
        ) : (
          <GuestView config={config} />
        )}
      </div>
      {config ? (
        <footer className="footer muted">
          Speech engine: {config.engine === "local" ? "offline (on this server)" : config.engine}
        </footer>
      ) : null}
    </>
  );
}
