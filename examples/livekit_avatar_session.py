"""An existing livekit-agents voice agent that gets dyad's face in two lines.

Everything here is a stock livekit-agents app (its STT, LLM and TTS through LiveKit Inference; any
plugins work the same) except the two lines marked ``dyad``: the avatar takes the session's TTS audio,
plays it with a face driven by that audio, publishes both as the agent's microphone and camera, and
listens to the user (nods, smiles back, holds their gaze) while they talk.

Run it against a LiveKit server (LiveKit Inference needs LiveKit Cloud credentials):

    export LIVEKIT_URL=wss://<project>.livekit.cloud LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=...
    python -m livekit.agents start examples/livekit_avatar_session.py --dev

then open the agents playground (https://agents-playground.livekit.io) on the same project.
The face needs the joint model's checkpoint (``avatar_core/assets/avflow/avflow.pt`` or ``DYAD_MODEL``).
"""

from __future__ import annotations

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, cli

from integrations.livekit.avatar import AvatarSession

server = AgentServer()


class Receptionist(Agent):
    def __init__(self) -> None:
        super().__init__(
            instructions=(
                "You are Robin, the front-desk assistant of a public library. Answer in one or two "
                "short spoken sentences, without lists or markdown."
            )
        )


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    session: AgentSession[None] = AgentSession(
        stt="deepgram/nova-3", llm="openai/gpt-4.1-mini", tts="cartesia/sonic-2"
    )

    avatar = AvatarSession(persona="library_receptionist")  # dyad
    await avatar.start(session, room=ctx.room)  # dyad

    await session.start(agent=Receptionist(), room=ctx.room)
    await session.generate_reply(instructions="Greet the visitor and offer your help.")


if __name__ == "__main__":
    cli.run_app(server)
