from services.national_hub.bootstrap import bootstrap
from services.national_hub.config import HubSettings
from shared.runtime import serve

if __name__ == "__main__":
    settings = HubSettings()
    serve(lambda: bootstrap(settings), settings.http_host, settings.http_port)
