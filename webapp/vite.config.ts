import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

// One build serves every environment: everything environment-specific comes from GET /api/config
// at run time, so there are no build-time env variables here.
export default defineConfig({
  plugins: [react()],
  // amazon-cognito-identity-js depends on the `buffer` package (v4), which reads Node's `global` at load
  // time (`global.TYPED_ARRAY_SUPPORT`): without this the staff page throws a ReferenceError in browsers.
  define: { global: "globalThis" },
  base: "/",
  build: { outDir: "dist", sourcemap: true, target: "es2022" },
  server: {
    // `npm run dev` against a runtime on :8000 (bin/dev serves the built app itself).
    proxy: {
      "/api": "http://127.0.0.1:8000",
      "/event": { target: "http://127.0.0.1:8000", ws: true },
      "/ws": { target: "ws://127.0.0.1:8000", ws: true },
    },
  },
  test: {
    environment: "node",
    include: ["src/**/*.test.ts"],
  },
});
