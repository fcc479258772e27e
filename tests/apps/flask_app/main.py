"""Flask test application: JSON, forms, uploads, streaming, errors, url_for."""

import hashlib
import time

from flask import Flask, Response, jsonify, redirect, request, session, url_for

app = Flask(__name__)
app.secret_key = "caddysnake-test-secret"
app.config["MAX_CONTENT_LENGTH"] = 64 * 1024 * 1024


@app.route("/subprocess")
def subprocess_python():
    """What sys.executable finds: the venv's packages, as under gunicorn."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import sys, flask; print(sys.prefix)"],
                         capture_output=True, text=True, timeout=60)
    return jsonify(rc=out.returncode, prefix=out.stdout.strip(), err=out.stderr[-500:])


@app.route("/hello-world")
def hello():
    return "Hello world!"


# A file served with send_file (through wsgi.file_wrapper), made once.
FILE_DATA = hashlib.sha256(b"flask file").digest() * (1 << 15)  # 1 MiB


def _file_path():
    import os
    import tempfile

    path = os.path.join(tempfile.gettempdir(), "caddysnake-flask-%d.bin" % os.getpid())
    if not os.path.exists(path):
        with open(path + ".tmp", "wb") as f:
            f.write(FILE_DATA)
        os.replace(path + ".tmp", path)
    return path


@app.get("/file")
def send_a_file():
    """send_file with conditional requests and ranges, as Werkzeug serves them."""
    from flask import send_file

    return send_file(_file_path(), mimetype="application/octet-stream", conditional=True,
                     etag=True, max_age=60)


@app.post("/json")
def json_echo():
    data = request.get_json()
    return jsonify(
        received=data,
        total=sum(data.get("numbers", [])),
        content_type=request.content_type,
        method=request.method,
    )


@app.post("/form")
def form():
    return jsonify(
        form={k: request.form.getlist(k) for k in request.form},
        args={k: request.args.getlist(k) for k in request.args},
    )


@app.post("/upload")
def upload():
    out = {"files": {}, "fields": {k: request.form.get(k) for k in request.form}}
    for name, f in request.files.items(multi=True):
        data = f.read()
        out["files"][name] = {
            "filename": f.filename,
            "content_type": f.mimetype,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    return jsonify(out)


@app.get("/stream")
def stream():
    n = min(int(request.args.get("n", 5)), 100)
    delay = min(float(request.args.get("delay", 0.3)), 2.0)

    def gen():
        for i in range(n):
            yield f"chunk-{i}\n"
            if i != n - 1:
                time.sleep(delay)

    return Response(gen(), mimetype="text/plain")


@app.get("/raise")
def boom():
    raise ValueError(f"flask-boom-{request.args.get('id', 'x')}")


@app.get("/urls")
def urls():
    return jsonify(
        hello=url_for("hello"),
        hello_external=url_for("hello", _external=True),
        script_root=request.script_root,
        path=request.path,
        full_path=request.full_path,
        url=request.url,
        host=request.host,
        remote_addr=request.remote_addr,
    )


@app.get("/go")
def go():
    return redirect(url_for("hello"))


@app.get("/session/set")
def session_set():
    session["value"] = request.args["v"]
    return "stored"


@app.get("/session/get")
def session_get():
    return session.get("value", "<none>")


@app.route("/method", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
def method():
    return jsonify(method=request.method, body=request.get_data(as_text=True))
