from services.province_node.bootstrap import bootstrap
from services.province_node.config import NodeSettings
from shared.runtime import serve

if __name__ == "__main__":
    settings = NodeSettings()
    serve(lambda: bootstrap(settings), settings.http_host, settings.http_port)
