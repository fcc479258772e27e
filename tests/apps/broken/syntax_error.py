def app(environ, start_response)
    return [b"missing colon above"]
