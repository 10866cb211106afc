echo "$GREETING"
cat /app/generated/info
echo "running as $(id -u):$(id -g) in $(pwd)"
