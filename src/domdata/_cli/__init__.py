"""Commands of ``domdata`` that live in modules of their own, imported only
when they run (``domdata.cli`` names them; see ``_Shell.lazy``)."""
