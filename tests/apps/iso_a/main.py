import os

NAME = "site-a"
IMPORT_CWD = os.getcwd()


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/cwd":
        body = IMPORT_CWD.encode()
    else:
        body = f"{NAME} from {os.path.basename(os.path.dirname(os.path.abspath(__file__)))}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
