# syntax=docker/dockerfile:1
# Build stage: compile TypeScript with the full dev toolchain.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

# Runtime stage: compiled JS and production dependencies only, non-root.
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY schema ./schema
COPY config/production.example.yaml ./config/
RUN mkdir -p /var/lib/pgwitness/audit && chown -R node:node /var/lib/pgwitness
USER node
EXPOSE 6432 9187
# Liveness from /healthz on metrics.listen (configure metrics.listen: "0.0.0.0:9187").
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9187/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Mount the config and certificates, e.g. -v ./pgwitness.yaml:/etc/pgwitness/pgwitness.yaml:ro
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["serve", "--config", "/etc/pgwitness/pgwitness.yaml"]
