#!/usr/bin/env python3
"""Writes positives/<rule-id>.txt: one realistic synthetic credential per
built-in rule, each in a realistic context (.env, JSON, YAML, curl, URL,
header, code). The values are random, shaped like the real format, and
valid for nothing. Deterministic (fixed seed); rerun after adding a rule.

    python3 crates/dlp/tests/corpus/generate_positives.py
"""
import base64, hashlib, json, os, random, string

rng = random.Random(20261129)
UP, LO, DG = string.ascii_uppercase, string.ascii_lowercase, string.digits
AN = UP + LO + DG
HEX = "0123456789abcdef"

def r(chars, n): return "".join(rng.choice(chars) for _ in range(n))

def b64url(n): return r(AN + "-_", n)

# rule id -> (value, context kind)
V = {
  "aws-access-key-id": ("AKIA" + r(UP + "234567", 16), "env"),
  "aws-secret-access-key": (r(AN + "/+", 40), "aws"),
  "gcp-api-key": ("AIza" + r(AN + "_-", 35), "json"),
  "google-oauth-client-secret": ("GOCSPX-" + r(AN + "_-", 28), "json"),
  "gcp-service-account-key": (r(HEX, 40), "gcp"),
  "azure-storage-account-key": (r(AN + "+/", 86) + "==", "azconn"),
  "azure-ad-client-secret": (r(AN, 3) + "8Q~" + r(AN + "_~.", 34), "env"),
  "azure-devops-pat": (r(LO + "234567", 52), "ado"),
  "alibaba-access-key-id": ("LTAI" + r(AN, 20), "yaml"),
  "digitalocean-token": ("dop_v1_" + r(HEX, 64), "curl"),
  "heroku-api-key": ("HRKU-" + r(AN + "_-", 60), "env"),
  "fly-io-token": ("fo1_" + r(AN + "_-", 43), "env"),
  "cloudflare-api-token": (r(AN + "_-", 40), "cloudflare"),
  "cloudflare-origin-ca-key": ("v1.0-" + r(HEX, 24) + "-" + r(HEX, 146), "env"),
  "netlify-token": (r(AN + "_-", 43), "netlify"),
  "databricks-token": ("dapi" + r(HEX, 32), "header"),
  "supabase-token": ("sbp_" + r(HEX, 40), "env"),
  "planetscale-token": ("pscale_tkn_" + r(AN + "_-", 43), "yaml"),
  "pulumi-token": ("pul-" + r(HEX, 40), "env"),
  "terraform-cloud-token": (r(AN, 14) + ".atlasv1." + r(AN + "_-", 67), "tfrc"),
  "hashicorp-vault-token": ("hvs." + r(AN + "_-", 90), "header-vault"),
  "doppler-token": ("dp.pt." + r(AN, 43), "env"),
  "age-secret-key": ("AGE-SECRET-KEY-1" + r("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58), "age"),
  "github-pat": ("ghp_" + r(AN, 36), "curl"),
  "github-fine-grained-pat": ("github_pat_" + r(AN, 22) + "_" + r(AN, 59), "env"),
  "github-oauth-token": ("gho_" + r(AN, 36), "json"),
  "github-app-token": ("ghs_" + r(AN, 36), "url-git"),
  "github-refresh-token": ("ghr_" + r(AN, 76), "json"),
  "gitlab-pat": ("glpat-" + r(AN + "_-", 20), "header-gitlab"),
  "gitlab-deploy-token": ("gldt-" + r(AN + "_-", 20), "env"),
  "gitlab-runner-token": ("glrt-" + r(AN + "_-", 20), "toml"),
  "gitlab-pipeline-trigger-token": ("glptt-" + r(HEX, 40), "curl-form"),
  "bitbucket-app-password": ("ATBB" + r(AN, 32), "env"),
  "atlassian-api-token": ("ATATT3" + r(AN + "_-", 186), "env"),
  "anthropic-api-key": ("sk-ant-api03-" + r(AN + "_-", 93) + "AA", "header-anthropic"),
  "anthropic-admin-key": ("sk-ant-admin01-" + r(AN + "_-", 93) + "AA", "env"),
  "anthropic-oauth-token": ("sk-ant-oat01-" + r(AN + "_-", 93) + "AA", "env"),
  "openai-api-key": ("sk-" + r(AN, 20) + "T3BlbkFJ" + r(AN, 20), "python"),
  "openai-project-key": ("sk-proj-" + r(AN + "_-", 156), "header"),
  "openrouter-api-key": ("sk-or-v1-" + r(HEX, 64), "env"),
  "huggingface-token": ("hf_" + r(UP + LO, 34), "python"),
  "replicate-token": ("r8_" + r(AN, 37), "env"),
  "groq-api-key": ("gsk_" + r(AN, 52), "env"),
  "perplexity-api-key": ("pplx-" + r(AN, 48), "header"),
  "xai-api-key": ("xai-" + r(AN, 80), "env"),
  "mistral-api-key": (r(AN, 32), "mistral"),
  "cohere-api-key": (r(AN, 40), "cohere"),
  "slack-bot-token": ("xoxb-" + r(DG, 12) + "-" + r(DG, 13) + "-" + r(AN, 24), "env"),
  "slack-user-token": ("xoxp-" + r(DG, 12) + "-" + r(DG, 12) + "-" + r(DG, 13) + "-" + r(HEX, 32), "json"),
  "slack-app-token": ("xapp-1-A" + r(UP + DG, 10) + "-" + r(DG, 13) + "-" + r(HEX, 64), "env"),
  "slack-config-token": ("xoxe.xoxp-1-" + r(UP + DG, 150), "env"),
  "slack-webhook-url": ("https://hooks.slack.com/services/T" + r(UP + DG, 8) + "/B" + r(UP + DG, 10) + "/" + r(AN, 24), "curl-url"),
  "discord-bot-token": ("M" + r(AN, 23) + "." + r(AN + "_-", 6) + "." + r(AN + "_-", 38), "discord"),
  "discord-webhook-url": ("https://discord.com/api/webhooks/" + r(DG, 19) + "/" + r(AN + "_-", 68), "curl-url"),
  "telegram-bot-token": (r(DG, 10) + ":AA" + r(AN + "_-", 33), "url-telegram"),
  "teams-webhook-url": ("https://acme.webhook.office.com/webhookb2/" + "-".join(r(HEX, n) for n in (8, 4, 4, 4, 12)) + "@" + "-".join(r(HEX, n) for n in (8, 4, 4, 4, 12)) + "/IncomingWebhook/" + r(HEX, 32) + "/" + "-".join(r(HEX, n) for n in (8, 4, 4, 4, 12)), "curl-url"),
  "twilio-api-key": ("SK" + r(HEX, 32), "twilio-sk"),
  "twilio-auth-token": (r(HEX, 32), "twilio-auth"),
  "sendgrid-api-key": ("SG." + r(AN + "_-", 22) + "." + r(AN + "_-", 43), "header"),
  "mailgun-api-key": ("key-" + r(HEX, 32), "curl-basic"),
  "mailchimp-api-key": (r(HEX, 32) + "-us21", "env"),
  "stripe-secret-key": ("sk_live_" + r(AN, 99), "curl-basic"),
  "stripe-webhook-secret": ("whsec_" + r(AN, 32), "env"),
  "square-access-token": ("EAAA" + r(AN + "_-", 60), "header"),
  "square-oauth-secret": ("sq0csp-" + r(AN + "_-", 43), "json"),
  "braintree-access-token": ("access_token$production$" + r(LO + DG, 16) + "$" + r(HEX, 32), "env"),
  "shopify-token": ("shpat_" + r(HEX, 32), "header-shopify"),
  "npm-access-token": ("npm_" + r(AN, 36), "npmrc"),
  "pypi-upload-token": ("pypi-AgEIcHlwaS5vcmc" + r(AN + "_-", 140), "pypirc"),
  "rubygems-api-key": ("rubygems_" + r(HEX, 48), "yaml"),
  "nuget-api-key": ("oy2" + r(LO + DG, 43), "shell"),
  "crates-io-token": ("cio" + r(AN, 32), "cargo"),
  "dockerhub-pat": ("dckr_pat_" + r(AN + "_-", 27), "shell"),
  "artifactory-api-key": ("AKCp" + r(AN, 69), "header"),
  "linear-api-key": ("lin_api_" + r(AN, 40), "header-raw"),
  "notion-token": ("ntn_" + r(DG, 11) + r(AN, 35), "header"),
  "postman-api-key": ("PMAK-" + r(HEX, 24) + "-" + r(HEX, 34), "env"),
  "grafana-token": ("glsa_" + r(AN, 32) + "_" + r(HEX, 8), "header"),
  "new-relic-key": ("NRAK-" + r(UP + DG, 27), "env"),
  "sentry-token": ("sntryu_" + r(HEX, 64), "env"),
  "datadog-api-key": (r(HEX, 32), "datadog"),
  "figma-token": ("figd_" + r(AN + "_-", 40), "header-figma"),
  "dropbox-token": ("sl." + r(AN + "_-", 140), "header"),
  "mapbox-secret-token": ("sk.eyJ1IjoiYWNtZSIsImEiOiJ" + r(AN, 10) + "." + r(AN + "_-", 22), "env"),
  "twitter-bearer-token": ("A" * 22 + r(AN + "%", 90), "header"),
  "facebook-access-token": ("EAACEdEose0cBA" + r(AN, 180), "url-graph"),
  "okta-api-token": ("00" + r(AN + "_-", 40), "okta"),
  "private-key": (None, "pem"),
  "putty-private-key": (None, "putty"),
  "jwt": (None, "jwt"),
  "generic-url-password": ("S3cr" + r(AN, 14), "dburl"),
  "generic-authorization-header": (r(AN, 32), "header-x-api-key"),
  "generic-secret-assignment": (r(AN, 10) + r(DG, 4) + r(AN, 10), "generic"),
}

def pem():
    body = base64.b64encode(rng.randbytes(1190)).decode()
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN RSA PRIVATE KEY-----\n{lines}\n-----END RSA PRIVATE KEY-----\n"

def jwt():
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
    return enc({"alg": "HS256", "typ": "JWT"}) + "." + enc({"sub": str(rng.randint(10**8, 10**9)), "name": "Ada", "iat": 1764400000}) + "." + b64url(43)

def context(kind, v):
    return {
        "env": lambda: f"# deployment settings\nAPP_ENV=production\nCREDENTIAL={v}\nLOG_LEVEL=info\n",
        "aws": lambda: f"[default]\naws_access_key_id = AKIA{r(UP + '234567', 16)}\naws_secret_access_key = {v}\nregion = eu-west-1\n",
        "json": lambda: json.dumps({"client": {"id": "1234.apps.example", "credential": v, "scopes": ["read"]}}, indent=2) + "\n",
        "gcp": lambda: json.dumps({"type": "service_account", "project_id": "acme-prod", "private_key_id": v, "client_email": "ci@acme-prod.iam.gserviceaccount.com"}, indent=2) + "\n",
        "azconn": lambda: f'export AZURE_STORAGE_CONNECTION_STRING="DefaultEndpointsProtocol=https;AccountName=acmeprod;AccountKey={v};EndpointSuffix=core.windows.net"\n',
        "ado": lambda: f"variables:\n  AZURE_DEVOPS_PAT: {v}\n",
        "yaml": lambda: f"production:\n  provider: cloud\n  credentials:\n    key: {v}\n  region: eu-central-1\n",
        "curl": lambda: f'curl -sS -H "Authorization: Bearer {v}" https://api.example.com/v2/account\n',
        "cloudflare": lambda: f"CLOUDFLARE_API_TOKEN={v}\n",
        "netlify": lambda: f"NETLIFY_AUTH_TOKEN={v}\n",
        "header": lambda: f"GET /v1/resources HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer {v}\r\nAccept: application/json\r\n\r\n",
        "header-vault": lambda: f'curl --header "X-Vault-Token: {v}" https://vault.acme.internal:8200/v1/secret/data/app\n',
        "header-gitlab": lambda: f'curl --header "PRIVATE-TOKEN: {v}" "https://gitlab.example.com/api/v4/projects"\n',
        "header-anthropic": lambda: f'curl https://api.anthropic.com/v1/messages -H "x-api-key: {v}" -H "anthropic-version: 2023-06-01"\n',
        "header-shopify": lambda: f'curl -H "X-Shopify-Access-Token: {v}" https://acme.myshopify.com/admin/api/2024-01/shop.json\n',
        "header-raw": lambda: f'curl -H "Authorization: {v}" -H "Content-Type: application/json" https://api.linear.app/graphql\n',
        "header-figma": lambda: f'curl -H "X-Figma-Token: {v}" https://api.figma.com/v1/me\n',
        "header-x-api-key": lambda: f"POST /ingest HTTP/1.1\r\nHost: collector.example.net\r\nX-API-Key: {v}\r\n\r\n",
        "tfrc": lambda: f'credentials "app.terraform.io" {{\n  token = "{v}"\n}}\n',
        "age": lambda: f"# created: 2026-11-01T10:00:00Z\n# public key: age1{r('qpzry9x8gf2tvdw0s3jn54khce6mua7l', 58)}\n{v}\n",
        "url-git": lambda: f"git clone https://x-access-token:{v}@github.com/acme/widgets.git\n",
        "toml": lambda: f'[[runners]]\n  name = "ci-runner"\n  url = "https://gitlab.example.com"\n  token = "{v}"\n',
        "curl-form": lambda: f'curl -X POST --fail -F token={v} -F ref=main https://gitlab.example.com/api/v4/projects/42/trigger/pipeline\n',
        "python": lambda: f'import client\n\napi = client.Client(api_key="{v}")\nprint(api.models.list())\n',
        "mistral": lambda: f"MISTRAL_API_KEY={v}\n",
        "cohere": lambda: f'co = cohere.Client()\nCOHERE_API_KEY = "{v}"\n',
        "discord": lambda: f'DISCORD_BOT_TOKEN="{v}"\n',
        "curl-url": lambda: f"curl -X POST -H 'Content-type: application/json' --data '{{\"text\":\"deploy done\"}}' {v}\n",
        "url-telegram": lambda: f"https://api.telegram.org/bot{v}/sendMessage?chat_id=12345&text=hi\n",
        "twilio-sk": lambda: f"TWILIO_API_KEY={v}\nTWILIO_REGION=ie1\n",
        "twilio-auth": lambda: f"twilio:\n  account_sid: AC{r(HEX, 32)}\n  auth_token: {v}\n",
        "curl-basic": lambda: f"curl -s --user 'api:{v}' https://api.example.com/v3/messages -F to=ops@example.com\n",
        "npmrc": lambda: f"//registry.npmjs.org/:_authToken={v}\nalways-auth=true\n",
        "pypirc": lambda: f"[pypi]\n  username = __token__\n  password = {v}\n",
        "shell": lambda: f"#!/bin/sh\nset -e\nexport PUBLISH_KEY={v}\n./publish.sh\n",
        "cargo": lambda: f'[registry]\ntoken = "{v}"\n',
        "datadog": lambda: f"DD_API_KEY={v}\nDD_SITE=datadoghq.eu\n",
        "url-graph": lambda: f"https://graph.facebook.com/v19.0/me?fields=id,name&access_token={v}\n",
        "okta": lambda: f"OKTA_API_TOKEN={v}\n",
        "pem": lambda: f"# deploy key, do not share\n{pem()}",
        "putty": lambda: "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: deploy\nPublic-Lines: 2\n" + r(AN, 64) + "\n" + r(AN, 16) + "\nPrivate-Lines: 1\n" + r(AN, 44) + "\nPrivate-MAC: " + r(HEX, 64) + "\n",
        "jwt": lambda: f"Cookie: session={jwt()}; Path=/\n",
        "dburl": lambda: f"DATABASE_URL=postgres://app_user:{v}@db.acme.internal:5432/app\n",
        "generic": lambda: f'config = {{\n    "db_host": "db.internal",\n    "db_password": "{v}",\n}}\n',
    }[kind]()

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "positives")
os.makedirs(out, exist_ok=True)
for rule, (value, kind) in sorted(V.items()):
    with open(os.path.join(out, f"{rule}.txt"), "w") as f:
        f.write(f"# expect: {rule}\n" + context(kind, value))
print(f"wrote {len(V)} positives to {out}")
