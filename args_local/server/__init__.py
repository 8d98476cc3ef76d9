"""`args-local serve`: the OpenAI chat-completions API over Engine.stream (Starlette + uvicorn).

    errors.py       OpenAI-shaped error bodies (APIError)
    chat_request.py an OpenAI request body -> messages + DecodingSettings (the `args` extra field)
    responses.py    Finished / Step -> chat.completion and chat.completion.chunk objects
    generations.py  one decoding thread, a bounded waiting line, cancellation per request
    app.py          the routes, the API key, the body-size cap
    runner.py       uvicorn on a socket bound beforehand, one line once it listens
"""
