"""The README's 20-line app: a function, an actor, a call, a map."""

import asyncio

import motes

app = motes.App("hello")


@app.mote(min=2)  # two instances, spread over two nodes
def greet(name: str) -> str:
    return f"hello {name}"


@app.actor  # one activation per key across the mesh
class Visits:
    def __init__(self) -> None:
        self.count = 0

    def visit(self) -> int:
        self.count += 1  # saved after every call; survives restarts
        return self.count


async def main() -> None:
    async with motes.connect() as mesh:  # the local mesh, or motes.connect(URL)
        await mesh.deploy(app)  # returns once instances are ready
        print(await mesh.call("hello.greet", "ada"))
        print([r async for r in mesh.map("hello.greet", ["a", "b", "c"])])
        print(await mesh.actor("hello.Visits", "ada").visit())


if __name__ == "__main__":
    asyncio.run(main())
