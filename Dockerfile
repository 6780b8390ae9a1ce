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
EXPOSE 6432
# Mount the config and certificates, e.g. -v ./pgwitness.yaml:/etc/pgwitness/pgwitness.yaml:ro
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["serve", "--config", "/etc/pgwitness/pgwitness.yaml"]
