from services.pharmacy_gateway.bootstrap import bootstrap
from services.pharmacy_gateway.config import GatewaySettings
from shared.runtime import serve

if __name__ == "__main__":
    settings = GatewaySettings()
    serve(lambda: bootstrap(settings), settings.http_host, settings.http_port)
