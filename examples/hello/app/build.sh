# Runs at build time, inside the sandbox, on the image's own filesystem.
mkdir -p /app/generated
date -u +%Y > /app/generated/year
echo "built by $(id -u) in $(pwd)" > /app/generated/info
