"""A Starlette application behind Mangum, as web frameworks are deployed to Lambda."""

from mangum import Mangum
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


async def item(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "id": request.path_params["id"],
            "q": request.query_params.getlist("q"),
            "cookie": request.cookies.get("session"),
            "method": request.method,
        },
        headers={"x-framework": "starlette"},
    )


async def create(request: Request) -> JSONResponse:
    body = await request.json()
    response = JSONResponse({"created": body}, status_code=201)
    response.set_cookie("seen", "yes")
    return response


async def missing(request: Request) -> PlainTextResponse:
    return PlainTextResponse("nothing here", status_code=404)


app = Starlette(
    routes=[
        Route("/items/{id}", item, methods=["GET"]),
        Route("/items", create, methods=["POST"]),
        Route("/{rest:path}", missing),
    ]
)
handler = Mangum(app, lifespan="off")
